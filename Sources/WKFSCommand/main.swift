print("wkfs")
