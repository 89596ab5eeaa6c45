"""Background lookup of members' cédulas in Colombia's electoral census, on Django-Q2."""
