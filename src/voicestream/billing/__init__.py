"""Credits: what work costs (``prices``), the ledger that holds and spends them (``ledger``),
and the meter that posts streaming usage to it (``metering``)."""
