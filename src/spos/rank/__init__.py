"""`spos rank`: a supernet's ranking of architectures against their stand-alone accuracy."""
