#!/usr/bin/env bash
# The Kafka container's command (docker-compose.yml). The image formats its KRaft storage itself, without SCRAM
# users; SASL/SCRAM needs the super user's credential in the metadata before the first login, so this formats
# the storage first (first start only) with the admin's SCRAM-SHA-512 credential, writes the admin's client
# properties for the health check, then hands over to the image's own start (which sees "already formatted").
# The services' users and ACLs come later from deploy/kafka_acls.py (the kafka-init service), as admin.
set -euo pipefail
: "${ADMIN_PASSWORD:?ADMIN_PASSWORD (KAFKA_ADMIN_PASSWORD in .env) is not set}"
umask 077

# The storage tool validates a whole broker configuration: build it from the same KAFKA_* variables the image uses.
format_props=$(mktemp)
cat > "$format_props" <<PROPS
process.roles=${KAFKA_PROCESS_ROLES}
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_CONTROLLER_QUORUM_VOTERS}
controller.listener.names=${KAFKA_CONTROLLER_LISTENER_NAMES}
listeners=${KAFKA_LISTENERS}
advertised.listeners=${KAFKA_ADVERTISED_LISTENERS}
listener.security.protocol.map=${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP}
inter.broker.listener.name=${KAFKA_INTER_BROKER_LISTENER_NAME}
sasl.enabled.mechanisms=${KAFKA_SASL_ENABLED_MECHANISMS}
sasl.mechanism.inter.broker.protocol=${KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL}
sasl.mechanism.controller.protocol=${KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL}
log.dirs=${KAFKA_LOG_DIRS}
PROPS
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "${CLUSTER_ID}" --config "$format_props" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=${ADMIN_PASSWORD}]"
rm -f "$format_props"

# For the health check (kafka-broker-api-versions.sh --command-config): readable by this user only.
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${ADMIN_PASSWORD}";
PROPS

exec /etc/kafka/docker/run
