"""The flash sale, in its parts (``bench.flash_sale`` is the entry point and re-exports the
public names):

* :mod:`~bench.flash.sale`: what a sale is: its configuration, the shop a shopper talks to, and
  the record of what happened;
* :mod:`~bench.flash.simulation`: the shoppers and their payments, in real time;
* :mod:`~bench.flash.checks`: the verification of the shop's books and the orders' outcomes;
* :mod:`~bench.flash.report`: the printed report;
* :mod:`~bench.flash.shops`: the targets, the embedded engine and ``stockade serve`` over HTTP.
"""
