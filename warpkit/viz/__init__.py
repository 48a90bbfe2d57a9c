"""warpkit.viz"""
