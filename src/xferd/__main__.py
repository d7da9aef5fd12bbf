from xferd.cli import main

raise SystemExit(main())
