"""The silo agent (import name aslora_silo): dials out, trains with DP on local data, enforces its budget."""
