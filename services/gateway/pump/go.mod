module es-serverless/gateway/pump

go 1.22
