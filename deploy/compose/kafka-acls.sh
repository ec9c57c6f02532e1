#!/usr/bin/env bash
# One-shot (deploy/docker-compose.yml, service kafka-acls): the ACLs of deploy/local/stack.sh
# (ensure_kafka_acls), created as the admin principal. Adding an ACL that exists is a no-op.
set -euo pipefail

cat >/tmp/admin.properties <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
EOF

acl() {
    /opt/kafka/bin/kafka-acls.sh --bootstrap-server kafka:9092 --command-config /tmp/admin.properties \
        --add --force "$@"
}

acl --allow-principal User:duetime-services --operation Read --operation Write \
    --operation Describe --operation Create --operation DescribeConfigs --operation AlterConfigs \
    --topic duetime. --resource-pattern-type prefixed
acl --allow-principal User:duetime-services --operation Read --operation Describe \
    --group duetime- --resource-pattern-type prefixed
# A DENY beats any ALLOW: the target principal never reaches duetime's or Kafka's topics.
acl --allow-principal User:duetime-target --operation Write --operation Describe --topic '*'
acl --deny-principal User:duetime-target --operation All --topic duetime. --topic __ \
    --resource-pattern-type prefixed
for tenant in dev tenant-b; do
    acl --allow-principal "User:ingress-$tenant" --operation Write --operation Describe \
        --topic "duetime.ingress.$tenant"
done
