"""`python -m zoo avatar` and `python -m zoo demo`: a user's photo to a textured, rigged, animated
avatar. Layer: the cli layer (top); it composes `zoo.preprocess`, `zoo.fit`, `zoo.export` and a
trained system (`zoo.systems`)."""
