#!/usr/bin/env bash
# Installs Temporal's time-skipping test server (the Java one; @temporalio/testing would download a
# native build of it from outside the package registries) and prints the path of an executable that
# TestWorkflowEnvironment.createTimeSkipping runs as `server.executable: { type: 'existing-path' }`:
#
#   export TEMPORAL_TEST_SERVER_PATH=$(scripts/install-temporal-test-server.sh)
#
# Needs java (17+) and mvn. Resolves the jars in scripts/temporal-test-server/pom.xml from Maven
# Central into the Maven repository, writes their classpath and a launcher into the install folder
# (argument 1, else ~/.cache/agent-jobs/temporal-test-server), and records a class-data archive
# so that the JVM starts well within the 5 s the SDK gives the server to answer. Does nothing
# when the folder already holds an install made from the same pom.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pom="$here/temporal-test-server/pom.xml"
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-jobs/temporal-test-server}
launcher="$dir/temporal-test-server"

if [ -x "$launcher" ] && cmp -s "$pom" "$dir/pom.xml"; then
  echo "$launcher"
  exit 0
fi

mkdir -p "$dir"
rm -f "$dir/pom.xml" "$dir/classes.jsa"
mvn -q -B -f "$pom" dependency:build-classpath -Dmdep.outputFile="$dir/classpath" >&2

cat > "$launcher" <<'LAUNCHER'
#!/bin/sh
# Temporal's test server: `temporal-test-server <port> [--enable-time-skipping]`, as the SDK runs it.
here=$(dirname "$0")
exec java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:SharedArchiveFile="$here/classes.jsa" -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off \
  -cp "$(cat "$here/classpath")" io.temporal.testserver.TestServer "$@"
LAUNCHER
chmod +x "$launcher"

# The class-data archive: the classes one start loads, recorded once at exit of a first start.
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ArchiveClassesAtExit="$dir/classes.jsa" -Xlog:cds=off -Xlog:cds+dynamic=off \
  -cp "$(cat "$dir/classpath")" io.temporal.testserver.TestServer "$port" >&2 &
pid=$!
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "the test server exited before it listened" >&2; exit 1; }
  sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || true

cp "$pom" "$dir/pom.xml"
echo "$launcher"
