-- wrk script: OFREP single-flag evaluation, the seed's user context.
wrk.method = "POST"
wrk.body = '{"context":{"targetingKey":"user-42","user_id":"user-42","country":"DE","plan":"pro"}}'
wrk.headers["Content-Type"] = "application/json"
