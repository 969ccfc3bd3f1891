"""Close (close.com): leads as accounts, contacts, opportunities, users and activities."""
