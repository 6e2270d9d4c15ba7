"""`aslora coordinator dashboard`: a read-only web page of the federation's runs, served on loopback from
the admin service's queries (its server and chart libraries load only when the command runs)."""
