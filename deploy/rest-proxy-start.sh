#!/usr/bin/env bash
# Start Confluent REST Proxy with HTTP basic auth (docker-compose.yml, service rest-proxy).
#
# The login lives in .env (REST_PROXY_PASSWORD): it is written here, at start, into the JAAS password file that
# Jetty's PropertyFileLoginModule reads (realm KafkaRest, authentication.realm), never into the repository.
set -euo pipefail

: "${REST_PROXY_USER:?REST_PROXY_USER is not set}"
: "${REST_PROXY_PASSWORD:?set REST_PROXY_PASSWORD in .env (see deploy/env.example)}"
case "${REST_PROXY_PASSWORD,,}" in
  *change-me* | *changeme*)
    echo "rest-proxy: REST_PROXY_PASSWORD is the deploy/env.example placeholder; set a real one in .env" >&2
    exit 1
    ;;
esac
# The password file's syntax is "user: password,role": a comma or a line break would change its meaning.
if [[ "$REST_PROXY_PASSWORD" =~ [,:[:space:]] ]]; then
  echo "rest-proxy: REST_PROXY_PASSWORD must not contain commas, colons or white space" >&2
  exit 1
fi

umask 077
dir="${REST_PROXY_AUTH_DIR:-/tmp/shekara-rest-proxy}"
mkdir -p "$dir"
printf '%s: %s,%s\n' "$REST_PROXY_USER" "$REST_PROXY_PASSWORD" "${KAFKA_REST_AUTHENTICATION_ROLES:-integrator}" \
  > "$dir/users.properties"
cat > "$dir/jaas.conf" <<JAAS
${KAFKA_REST_AUTHENTICATION_REALM:-KafkaRest} {
  org.eclipse.jetty.jaas.spi.PropertyFileLoginModule required
  file="$dir/users.properties";
};
JAAS
export KAFKAREST_OPTS="-Djava.security.auth.login.config=$dir/jaas.conf ${KAFKAREST_OPTS:-}"
if [[ -n "${REST_PROXY_DRY_RUN:-}" ]]; then  # tests: the files, not the server
  exit 0
fi
exec /etc/confluent/docker/run
