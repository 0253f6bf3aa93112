Pop3Bench.main()
