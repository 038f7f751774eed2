from airnet_restore.cli import run

run()
