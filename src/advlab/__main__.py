from advlab.cli.app import main

main()
