from ldmprobe.cli.main import run

raise SystemExit(run())
