"""fileset"""
