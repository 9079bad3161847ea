//! The demo's manifests: plain Argo Rollouts / Kubernetes YAML, written to a
//! folder that `serin up`'s file watcher follows, so every deploy in the demo
//! is an edit of a file — GitOps on one machine.

/// A Deployment with a RollingUpdate strategy (the seed's Strategy 1).
pub fn rolling(tag: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo-rolling
spec:
  replicas: 4
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      app: demo-rolling
  template:
    metadata:
      labels:
        app: demo-rolling
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: argoproj/rollouts-demo:{tag}
          ports:
            - containerPort: 8080
          env:
            - name: DEMO_DRAIN_MS
              value: "300"
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
            failureThreshold: 1
          livenessProbe:
            httpGet:
              path: /health
              port: 8080
            periodSeconds: 2
"#
    )
}

/// A blue-green Rollout with active and preview Services (Strategy 2).
pub fn blue_green(tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: demo-bluegreen
spec:
  replicas: 3
  strategy:
    blueGreen:
      activeService: demo-bluegreen-active
      previewService: demo-bluegreen-preview
      autoPromotionEnabled: true
      scaleDownDelaySeconds: 2
  selector:
    matchLabels:
      app: demo-bluegreen
  template:
    metadata:
      labels:
        app: demo-bluegreen
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: argoproj/rollouts-demo:{tag}
          ports:
            - containerPort: 8080
          env:
            - name: DEMO_DRAIN_MS
              value: "300"
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
            failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: demo-bluegreen-active
spec:
  selector:
    app: demo-bluegreen
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: demo-bluegreen-preview
spec:
  selector:
    app: demo-bluegreen
  ports:
    - port: 80
      targetPort: 8080
"#
    )
}

/// A canary Rollout with weighted steps through an Istio VirtualService
/// (Strategy 3), shortened pauses.
pub fn canary(tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: demo-canary
spec:
  replicas: 4
  strategy:
    canary:
      canaryService: demo-canary-canary
      stableService: demo-canary-stable
      abortScaleDownDelaySeconds: 2
      scaleDownDelaySeconds: 2
      trafficRouting:
        istio:
          virtualService:
            name: demo-canary-vs
            routes:
              - primary
      analysis:
        templates:
          - templateName: demo-error-rate
        args:
          - name: canary-hash
            valueFrom:
              podTemplateHashValue: Latest
      steps:
        - setWeight: 25
        - pause:
            duration: 3s
        - setWeight: 50
        - pause:
            duration: 3s
        - setWeight: 100
  selector:
    matchLabels:
      app: demo-canary
  template:
    metadata:
      labels:
        app: demo-canary
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: argoproj/rollouts-demo:{tag}
          ports:
            - containerPort: 8080
          env:
            - name: DEMO_DRAIN_MS
              value: "300"
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
            failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: demo-canary-stable
spec:
  selector:
    app: demo-canary
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: demo-canary-canary
spec:
  selector:
    app: demo-canary
  ports:
    - port: 80
      targetPort: 8080
---
# Judged from Serin's own proxy counters: no Prometheus needed.
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: demo-error-rate
spec:
  args:
    - name: canary-hash
  metrics:
    - name: error-rate
      interval: 1s
      failureCondition: len(result) > 0 && result[0] > 0.05
      failureLimit: 0
      provider:
        builtin:
          metric: error-rate
          revision: "{{{{args.canary-hash}}}}"
          window: 2s
          minRequests: 5
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: demo-canary-vs
spec:
  hosts:
    - demo-canary.local
  http:
    - name: primary
      route:
        - destination:
            host: demo-canary-stable
          weight: 100
        - destination:
            host: demo-canary-canary
          weight: 0
"#
    )
}
