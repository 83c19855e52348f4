#!/bin/sh
# A deploy gate, as a CI job or a release script would run it: ask for sign-off, wait for the
# answer (by long-poll), and deploy only if approved. Runs against `make dev`:
#
#     export COUNTERSIGN_URL=http://127.0.0.1:8000 COUNTERSIGN_API_KEY=cs_...
#     sh examples/deploy_gate.sh v1.2
#
# Answer at http://127.0.0.1:8000/dev/outbox/. On a terminal, stderr shows who was asked and
# the time left.
version=${1:-v1.2}
approver=${COUNTERSIGN_APPROVER:-alice@example.com}

countersign ask "Deploy $version to prod" --approver "$approver" \
  --detail version="$version" --detail host="$(hostname)" --timeout 30m
case $? in
  0) echo "approved: deploying $version" ;;  # ./deploy.sh "$version"
  1) echo "denied: not deploying $version"; exit 1 ;;
  2) echo "nobody answered in time: not deploying $version"; exit 1 ;;
  *) echo "could not ask for sign-off: not deploying $version"; exit 1 ;;
esac
