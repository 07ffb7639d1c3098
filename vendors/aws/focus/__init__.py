"""FOCUS (FinOps Open Cost and Usage Specification) 1.2 relations over AWS billing data: native FOCUS exports as
they are, CUR exports through per-dialect views, and one ``focus`` relation over both."""
