from airnet_restore.cli import main

raise SystemExit(main())
