from peft_utils.cli import main

raise SystemExit(main())
