"""Adapters: the outside world (MSAL, Graph, LDAP, database, SMTP) behind small interfaces."""
