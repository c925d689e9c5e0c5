// Oracle
