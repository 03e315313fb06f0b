"""Reading and writing files safely: atomic no-follow writes (`files`) and one schema language for every file spos reads (`schema`)."""
