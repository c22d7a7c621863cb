"""`make check GRADE=...`: does a running stack meet the grade's Definition of done?"""
