"""The browser pages: the flow index, a flow's page, the start-a-run form and the live run page.

Session authentication (anonymous visitors go to the login page, /login/); every lookup goes
through `flows.services`, so someone else's flow or run answers 404 like a missing one.
"""
