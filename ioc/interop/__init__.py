"""Other systems' protocols, mapped onto our events and tickets."""
