"""What the network is: the spec, its variants, shapes, weights, the float64 reference, input checks."""
