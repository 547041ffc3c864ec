"""The highly available database: a Patroni + etcd cluster the platform follows by itself."""
