"""Event adapters: S3 job uploads and async requests arriving over SQS, direct invokes and warm-up."""
