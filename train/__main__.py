"""`python -m train STAGE …` — the entry torchrun launches (`torchrun --nproc-per-node N -m train …`)."""

from train.cli import main

raise SystemExit(main())
