"""disposal"""
