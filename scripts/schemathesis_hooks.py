# Schemathesis hooks for `npm run test:contract` (scripts/contract-tests.ts points SCHEMATHESIS_HOOKS here).
import re
import uuid

import schemathesis

# openapi.yaml's pattern for the Idempotency-Key header.
VALID_IDEMPOTENCY_KEY = re.compile(r'^(?:"[ !#-\[\]-~]{1,255}"|[!#-+\--\[\]-~]{1,255})$')


@schemathesis.hook
def map_headers(ctx, headers):
    # A valid Idempotency-Key used before replays that request, or refuses another body with 422: a rule
    # across requests no schema states, which test/idempotency.test.ts covers. Drawn keys repeat (Schemathesis
    # draws from a small space), so each valid key is made unique for its request; invalid ones stay as drawn,
    # for the negative checks.
    if headers:
        for name in list(headers):
            value = headers[name]
            if name.lower() == "idempotency-key" and isinstance(value, str) and VALID_IDEMPOTENCY_KEY.match(value):
                headers[name] = str(uuid.uuid4())
    return headers
