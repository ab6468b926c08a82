##! netanomd: export finished connections to the netanomd daemon over Broker and turn its
##! verdicts into notices. Loading the package loads the wire contract, the settings and the
##! logic, in that order.

@load ./api
@load ./config
@load ./main
