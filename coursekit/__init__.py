"""coursekit: the shared toolkit of the course.

One copy of everything the grades share: the shop data generator, the embedded
Postgres starter, the pipeline library, the native runner and the checkers.
Grades differ only by configuration and exercise scaffolding.
"""
