"""The reports' figures (SPEC "Reports") as plain data: pure, like the rest of the core. `collect` gathers, as the
readings and commands go by, what the engine does not keep (the day's curve, the readings received, the register);
`daily` and `periods` turn that and the engine into a report's figures; `quotad.reports` renders them."""
