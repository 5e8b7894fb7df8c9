"""executors.ray"""
