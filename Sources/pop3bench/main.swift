print("pop3bench: not yet")
