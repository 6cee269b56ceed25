"""Identity providers: OpenID Connect issuers whose tokens `ods serve` accepts."""
