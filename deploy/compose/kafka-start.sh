#!/usr/bin/env bash
# The kafka container's command (deploy/docker-compose.yml): the image's own configure step
# writes server.properties from the KAFKA_* variables; then the storage is formatted with the
# SCRAM users (KRaft keeps them in the metadata log, so they must exist before the broker can
# authenticate anyone: ADR 0015), and the image's launch step starts the broker (it skips a
# storage that is already formatted).
set -euo pipefail

cat >/tmp/admin.properties <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
EOF

/etc/kafka/docker/configure
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" \
    -c /opt/kafka/config/server.properties \
    --add-scram "SCRAM-SHA-256=[name=admin,password=$KAFKA_ADMIN_PASSWORD]" \
    --add-scram "SCRAM-SHA-256=[name=duetime-services,password=$KAFKA_SERVICES_PASSWORD]" \
    --add-scram "SCRAM-SHA-256=[name=duetime-target,password=$KAFKA_TARGET_PASSWORD]" \
    --add-scram "SCRAM-SHA-256=[name=ingress-dev,password=$KAFKA_INGRESS_DEV_PASSWORD]" \
    --add-scram "SCRAM-SHA-256=[name=ingress-tenant-b,password=$KAFKA_INGRESS_TENANT_B_PASSWORD]"
exec /etc/kafka/docker/launch
