-- One server, three databases: Airflow metadata, the Info Mart, and the simulated IDB.
CREATE USER gim WITH PASSWORD 'gim';
CREATE DATABASE airflow OWNER gim;
CREATE DATABASE gim_infomart OWNER gim;
CREATE DATABASE gim_idb OWNER gim;
