"""The paper's experiments (its section 4) reproduced in the lab, and the report that sets
kembar's figures beside the paper's: sync speed per size and run, failover and failback
times, memory vs disk read.  ``paper`` holds the paper's published figures (the only fixed
numbers here); ``report`` turns a run's results into Markdown, PNG charts and JSON."""
