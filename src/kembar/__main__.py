from kembar.cli.main import main

main()
