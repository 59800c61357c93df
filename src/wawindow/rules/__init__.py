"""The rules of the tracker as plain Python, with no I/O: the executable form of the rule
book. Start at :mod:`wawindow.rules.engine`; one module per concept:

- :mod:`~wawindow.rules.service_window`: the 24-hour customer service window;
- :mod:`~wawindow.rules.entry_point`: the free entry point window;
- :mod:`~wawindow.rules.conversations`: conversations, finance's unit;
- :mod:`~wawindow.rules.ledger`: statuses and the per-message pricing ledger;
- :mod:`~wawindow.rules.opt_out`: opt-out decisions;
- :mod:`~wawindow.rules.identity`: one user whatever ids they are named by;
- :mod:`~wawindow.rules.erasure`: what erasing a person forgets in a conversation;
- :mod:`~wawindow.rules.consent`, :mod:`~wawindow.rules.people`: a person's consent and
  erasures at a business; :mod:`~wawindow.rules.send_check`: the sender's question;
- :mod:`~wawindow.rules.publish`: from the derived truth to transitions and counts, kept as
  :mod:`~wawindow.rules.published` (what was published);
- :mod:`~wawindow.rules.state`, :mod:`~wawindow.rules.transitions`: what is kept and produced.
"""
