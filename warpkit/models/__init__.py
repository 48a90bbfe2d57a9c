"""warpkit.models"""
