"""How well one ranking agrees with another: Kendall tau, Spearman rho, top-k overlap and bootstrap intervals (`ranking`), whole and inside FLOPs windows (`windows`)."""
