"""The reports' figures (SPEC "Reports") as plain data: pure, like the rest of the core. `collect` gathers, as the
readings and commands go by, what the engine does not keep (the day's curve, the readings received, the register);
`daily`, `phase` and `statement` turn that and the engine into a report's figures (a day's, a phase's, a
firm's month); `quotad.reports` renders them."""
