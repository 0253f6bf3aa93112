print("pop3d: not yet")
