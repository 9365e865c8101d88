from quotad.cli import main

raise SystemExit(main())
