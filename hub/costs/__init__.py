"""What users' instances cost: the price table and the ledger of what each user's instances ran up."""
